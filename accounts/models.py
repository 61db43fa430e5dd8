"""Organizations (tenants), users, per-org groups, devices and device tokens.

Every row a customer can name carries an immutable UUID: URLs, the API, storage paths and Vault
paths use it, never the sequential primary key, an email or a name.
"""
import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.text import slugify
from django_scim.models import AbstractSCIMGroupMixin, AbstractSCIMUserMixin


class OrganizationManager(models.Manager):
    def get_or_create_named(self, name: str) -> tuple["Organization", bool]:
        """The organization called `name`, created with a free slug if there is none."""
        existing = self.filter(name=name).first()
        if existing:
            return existing, False
        base = slugify(name)[:50] or "org"
        slug, counter = base, 1
        while self.filter(slug=slug).exists():
            counter += 1
            slug = f"{base}-{counter}"
        return self.create(name=name, slug=slug), True


class Organization(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    require_admin_mfa = models.BooleanField(
        default=False, help_text="Administrators who sign in with a password must use a TOTP code "
                                 "(console or manage.py orgsettings --require-admin-mfa).")

    objects = OrganizationManager()

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ORG_ADMIN = "org_admin", "Organization administrator"
    SECURITY_ANALYST = "security_analyst", "Security analyst"
    RESTORE_OPERATOR = "restore_operator", "Restore operator"
    USER = "user", "User"


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields):
        if not email:
            raise ValueError("A user needs an email address")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save()
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields):
        """Operators of the Haven installation itself (Django admin), outside any tenant's roles."""
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        if fields.get("organization") is None:
            fields["organization"], _ = Organization.objects.get_or_create_named("Operators")
        fields.setdefault("role", Role.ORG_ADMIN)
        return self.create_user(email, password, **fields)


class User(AbstractSCIMUserMixin, AbstractBaseUser, PermissionsMixin):
    """A person who logs in with an email address; belongs to exactly one organization."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="users")
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.USER)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Can log in to the Django admin (Haven operators).")
    date_joined = models.DateTimeField(auto_now_add=True)
    scim_deleted_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Deleted through SCIM: gone for the IdP (404), kept for administrators, keys and restores.")

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="user_role_valid"),
        ]

    def __str__(self) -> str:
        return self.email

    def set_scim_id(self, is_new: bool) -> None:
        """SCIM ids are the immutable UUID, never the sequential key django-scim2 would use."""
        if is_new or not self.scim_id:
            type(self).objects.filter(pk=self.pk).update(scim_id=str(self.uuid))
            self.scim_id = str(self.uuid)

    @property
    def is_org_admin(self) -> bool:
        return self.role == Role.ORG_ADMIN

    @property
    def scim_groups(self):
        return self.haven_groups.all()


class Group(AbstractSCIMGroupMixin):
    """A group inside one organization; names are unique per organization only."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="groups")
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(User, related_name="haven_groups", blank=True)
    role = models.CharField(max_length=32, choices=Role.choices, blank=True,
                            help_text="Members get this role while SCIM manages the organization (highest wins).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="group_name_unique_per_org")]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.name}"

    def set_scim_id(self, is_new: bool) -> None:
        if is_new or not self.scim_id:
            type(self).objects.filter(pk=self.pk).update(scim_id=str(self.uuid))
            self.scim_id = str(self.uuid)


class Device(models.Model):
    """An endpoint running the agent. Deauthorized devices come back only through an administrator."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="devices")
    owner = models.ForeignKey(User, on_delete=models.PROTECT, related_name="devices")
    name = models.CharField(max_length=200)
    os = models.CharField(max_length=100, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    enrolled_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    authorized = models.BooleanField(default=True)
    deauthorized_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.owner.email})"


class DeviceToken(models.Model):
    """A bearer credential of one device, stored only as its SHA-256."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token of {self.device_id} ({'revoked' if self.revoked_at else 'active'})"


class ScimToken(models.Model):
    """A bearer token an organization's identity provider uses for SCIM; stored as its SHA-256."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="scim_tokens")
    label = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)


class AuditEvent(models.Model):
    """Append-only log of administrative actions (who did what to which object, when)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="audit_events")
    actor = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=254, help_text="Email or system component, kept if the user goes.")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_uuid = models.UUIDField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]


class WorkerHeartbeat(models.Model):
    """Last time a Celery worker ran a task from each source (beat, an operator's ping)."""

    source = models.CharField(max_length=64, unique=True)
    nonce = models.CharField(max_length=64, blank=True)
    seen_at = models.DateTimeField()


class SamlSettings(models.Model):
    """One organization's identity provider: its own SP, its own IdP, nobody else's users."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="saml")
    enabled = models.BooleanField(default=False)
    idp_entity_id = models.CharField(max_length=500, blank=True)
    idp_metadata_xml = models.TextField(blank=True)
    idp_metadata_url = models.URLField(max_length=500, blank=True)
    attribute_email = models.CharField(max_length=200, blank=True,
                                       help_text="Attribute holding the email; empty: the NameID is the email.")
    attribute_name = models.CharField(max_length=200, blank=True, default="displayName")
    attribute_groups = models.CharField(max_length=200, blank=True, default="groups")
    jit_enabled = models.BooleanField(default=False, help_text="Create unknown users at first sign-in.")
    verified_domains = models.CharField(
        max_length=1000, blank=True,
        help_text="Email domains (comma-separated) whose users are sent to this IdP from the login page. "
                  "Set by Haven operators after the organization proved it owns them.")
    updated_at = models.DateTimeField(auto_now=True)

    def domains(self) -> list[str]:
        return [d.strip().lower() for d in self.verified_domains.split(",") if d.strip()]


class SamlAssertion(models.Model):
    """Ids of accepted assertions, kept until they expire: a replayed response is refused."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    assertion_id = models.CharField(max_length=200)
    not_on_or_after = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "assertion_id"], name="saml_assertion_once")]


class SamlServiceProviderKey(models.Model):
    """The installation's SAML SP key pair, the same for every web process on every host
    (console/saml/sp_keys.py). `current` signs; a staged `next` is published in the metadata too,
    so IdPs learn it before it signs. The key is sealed under HAVEN_STORAGE_KEY; the certificate
    is public."""

    class Slot(models.TextChoices):
        CURRENT = "current"
        NEXT = "next"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)  # bound into the sealed key
    slot = models.CharField(max_length=16, choices=Slot.choices, unique=True)  # one of each: created once
    certificate_pem = models.TextField()
    key_sealed = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)


class EnrollmentCode(models.Model):
    """A short-lived, single-use code a signed-in user gives an agent instead of a password (SSO)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="enrollment_codes")
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)


class LoginCounter(models.Model):
    """A rate-limit counter of password and code checks (accounts/throttle.py), or a marker.

    A table rather than the cache: the count must be incremented atomically by every web process
    (Django's database cache increments by read-then-write and resets the expiry on each write).
    """

    key = models.CharField(max_length=200, unique=True)
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)


class ApiClient(models.Model):
    """A customer integration (SOAR, SIEM, a script) calling /api/v1/public/ with a scoped key.

    Only the key's SHA-256 is stored (like device and SCIM tokens); the key is shown once. What a
    client may do is its scopes (accounts/api_clients.py), inside its organization only. Restores
    it asks for run on the authority of `created_by`, who must be allowed to restore.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_clients")
    name = models.CharField(max_length=100)
    scopes = models.JSONField(default=list)
    key_hash = models.CharField(max_length=64, unique=True)
    key_prefix = models.CharField(max_length=16, help_text="The key's first characters, to recognize it.")
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"API client {self.name} ({self.uuid})"

    @property
    def label(self) -> str:
        """How audit rows name it (actor_label): never mistaken for a person's email."""
        return f"api-client:{self.name} ({self.uuid})"


class ApiClientRestore(models.Model):
    """Which API client asked for a restore job: only that client's key may read and download it."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="restores")
    job = models.OneToOneField("archives.RestoreJob", on_delete=models.CASCADE, related_name="api_request")
    created_at = models.DateTimeField(auto_now_add=True)


class DeploymentToken(models.Model):
    """Enrolls a fleet's devices without passwords (DESIGN §11): an MDM script gives it with the
    user's email. Stored only as its SHA-256, like device tokens; spent one use per device; every
    use is audited (accounts/deployment.py). Whoever holds it can enroll a device for any user of
    the organization, so it expires, may be capped and revoked, and by default refuses users who
    already have an escrowed key (docs/threat-model.md)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="deployment_tokens")
    label = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognize it.")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="+",
                              help_text="Enrolled users join this group (and so follow its backup policy).")
    create_users = models.BooleanField(default=False, help_text="Create unknown users, in verified domains only.")
    allow_existing_keys = models.BooleanField(
        default=False, help_text="Also enroll devices of users who already have an escrowed key (the device "
                                 "receives it, as a replacement computer does).")
    max_uses = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: any number until it expires.")
    use_count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField()
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(max_uses__isnull=True) | models.Q(max_uses__gte=1),
                                   name="deployment_token_max_uses_positive"),
            models.CheckConstraint(condition=models.Q(max_uses__isnull=True)
                                   | models.Q(use_count__lte=models.F("max_uses")),
                                   name="deployment_token_uses_within_max"),
        ]

    def __str__(self) -> str:
        return f"deployment token {self.token_prefix}… of {self.organization_id}"

    @property
    def state(self) -> str:
        """active, revoked, expired or exhausted (a token in any but the first enrolls nothing)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        if self.max_uses is not None and self.use_count >= self.max_uses:
            return "exhausted"
        return "active"

    @property
    def label_for_audit(self) -> str:
        return f"deployment-token:{self.token_prefix} ({self.uuid})"
