"""Spaces entry point: `python app.py` serves the demo on http://127.0.0.1:7860.

GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change the address (Hugging Face Spaces sets
them); VQA_MODEL picks the model (default: the embedded model in weights/shapes-vlp).
`gradio app.py` runs it with auto-reload: it looks for the module-level `demo`.
"""

from __future__ import annotations

import logging

import demo as _demo_package  # noqa: F401  (sets the offline environment before gradio is imported)
from demo.sessions import use_lean_sessions
from demo.state import ModelManager
from demo.ui import build_demo, launch_kwargs, use_model_threads

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise

# The default model is loaded once, here, and shared by every session that does not choose another
# in the Model tab. If it can't be loaded (e.g. weights/shapes-vlp not trained yet) the page still
# starts, says why, and retries on the next request.
# A live training (classroom mode) runs in a child process that starts by importing this file again, as
# "__mp_main__": it must not load a model and build a second page.
if __name__ != "__mp_main__":
    use_model_threads()
    use_lean_sessions()
    models = ModelManager()
    models.preload()
    demo = build_demo(models)

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
