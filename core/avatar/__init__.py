"""Portrait avatars from one photo (PN-Relighting appearance path)."""
