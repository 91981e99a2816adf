"""Grants: every bucket of an account, with its amount, what is left, its terms and state."""
