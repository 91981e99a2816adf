"""Signed webhooks: every alert on `credits.alerts.v1` POSTed to each subscribed endpoint."""
