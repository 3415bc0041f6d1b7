"""Online and batch scoring: the HTTP service, reason codes per decision, the prediction log."""
