"""Web app and HTTP API over the :class:`~ghostkit.predict.Predictor`: ``ghostkit app --weights W`` (``pip install
"ghostkit[app]"``). The server is :mod:`ghostkit.app.server` (FastAPI), its page ``page.html`` beside it, one tab per
model file :mod:`ghostkit.app.tabs` (what each task shows), the resource bounds :mod:`ghostkit.app.limits`."""
