"""The answering engine: model backends, prompt assembly and knowledge retrieval.

No database, no HTTP routes: `api/` orchestrates what lives here.
"""
