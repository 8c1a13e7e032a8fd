//! amoCRM account webhooks: the form-encoded body parsed into typed events (to be written).
