"""Key escrow records and the key-access audit log arrive with the keystore issue."""
