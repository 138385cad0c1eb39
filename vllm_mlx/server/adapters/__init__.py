"""API adapters: each turns its API's request into a ``pipeline.ChatRequest`` and renders the
pipeline's event stream in its API's wire format. No parsing or generation logic lives here."""
