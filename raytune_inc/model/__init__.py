"""The model level: `tune` (`tuning`), what it returns (`result`), a tuned model saved and loaded (`saved`)."""
