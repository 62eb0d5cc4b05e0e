"""The Gradio demo: UI code only. It talks to the public `vqa` API and nothing else.

- `demo.state`: the shared, thread-safe model manager (current model + quantized copies);
- `demo.handlers`: what each button does, as plain functions (testable without a server);
- `demo.ui`: the gr.Blocks page and the serving settings (`build_demo`, `launch_kwargs`);
- `demo.make_examples`: writes the example gallery into demo/examples/.
"""

import os

# The demo works offline: no usage analytics, no version checks, no model downloads at
# run time (hub models must already be in the local cache). Set these before gradio /
# huggingface_hub are imported; an explicit value in the environment wins.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from demo.memory import return_large_blocks_to_the_system  # noqa: E402

return_large_blocks_to_the_system()

# transformers draws a "Loading weights" bar on every model load: noise in a server's log.
import transformers.utils.logging  # noqa: E402  (after the environment above)

transformers.utils.logging.disable_progress_bar()
