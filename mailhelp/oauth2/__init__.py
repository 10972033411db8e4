"""OAuth 2.0 sign-in to Microsoft 365 and Google: tokens, grants, their health."""
