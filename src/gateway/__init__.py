"""Gateway: a declarative LLM gateway serving the OpenAI Responses API."""

__version__ = "0.1.0"
