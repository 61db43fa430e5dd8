"""Codes an authenticator app would show, computed with django-otp's own TOTP from a device's key."""
import time

from django_otp.oath import TOTP


def totp_code(device, steps: int = 0) -> str:
    """The code for the current time step plus `steps` (within the device's tolerance of ±1).

    A code is accepted once: tests that need several use steps -1, 0, +1 in that order."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits)  # the app knows no drift
    totp.time = time.time() + steps * device.step
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device) -> str:
    right = {totp_code(device, s) for s in (-1, 0, 1)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in right)
