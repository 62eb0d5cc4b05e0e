"""The page: one gr.Blocks with the picture and question on the left and seven tabs on the right.

`build_demo(models)` builds it (with its queue settings); `launch_kwargs()` holds the
serving settings that belong to `launch()`. app.py, the tests and the benchmark all
use these two, so they serve exactly the same app.
"""

from __future__ import annotations

import os

import gradio as gr

from starlette.middleware import Middleware

from demo.handlers import (
    SUMMARY_TOKEN,
    SUMMARY_TOKEN_LABEL,
    Handlers,
    colorbar_image,
    model_choices,
    quantization_choices,
    quantization_table,
)
from demo.classroom import CLASSROOM_OFF, QUICK_RECIPE, ClassroomTraining
from demo.learn import MAX_MEMBERS, TABLE_HEADERS, LearnHandlers
from demo.make_examples import load_examples
from demo.search import HIT_HEADERS, IMAGE_QUERY, SESSION_GALLERY_MAX, TEXT_QUERY, SearchHandlers
from demo.state import ModelManager
from demo.upload_limits import UploadLimiter, UploadLimitMiddleware
from vqa import settings
from vqa.image_io import MAX_IMAGE_BYTES, MAX_QUESTION_CHARS

# ----- serving settings --------------------------------------------------------------------
# Threads PyTorch gives one request ($VQA_MODEL_THREADS). On 2 cores, a request's model work on two
# threads waits for the server's own threads (the event loop, the event streams) at every parallel
# step; on one thread it does not, and two requests still use both cores (INFERENCE_CONCURRENCY).
# bench/bench_app_latency.py measures both (bench/results/app_latency.txt).
MODEL_THREADS = 1
# Inference is CPU-bound and the server has 2 cores. Each request's model work runs on one thread
# (MODEL_THREADS), so two requests at a time use both cores and more would only make each one
# slower. Two, not one, also means that one long job (a quantization comparison that loads a model,
# a 5-caption beam search) cannot block every other user's quick /ask. All model events share one
# concurrency group, so the limit is 2 for the whole server, not 2 per button.
INFERENCE_CONCURRENCY = 2
# A bounded queue: with ~0.1-0.5 s per /ask on 2 cores, 16 waiting requests are a few
# seconds of work. A 17th client gets an immediate "queue is full" instead of waiting
# minutes behind the others; a classroom of 8 clicking at once still fits.
QUEUE_MAX_SIZE = 16
# Loading a model takes a lot of memory and both cores: one load at a time.
LOAD_CONCURRENCY = 1
# Sessions whose state the server keeps (Gradio's default is 10,000). Each costs about 0.2 MB even
# with nothing in it, so 10,000 would be ~2 GB; past this number the least recently used session
# is forgotten (its visitor gets the default model and must press "Show attention" again).
STATE_SESSION_CAPACITY = 1000
# What a session keeps for re-drawing heatmaps (maps, a display-size picture) expires after this
# long without a new "Show attention": visitors of a public Space rarely close their tab cleanly.
ATTENTION_STATE_TTL_S = 1800
# Gradio's cache folder (uploads, output pictures): every 10 minutes, files older than an hour go.
DELETE_CACHE = (600, 3600)

COLOUR_SCALE_WORDS = (
    '<div style="display:flex;justify-content:space-between;font-size:.9em;margin-top:-.3em">'
    "<span>◀ dark: little attention</span><span>bright: most attention ▶</span></div>"
)
CSS = """
.vqa-help { opacity: .8; }
.vqa-heat img { image-rendering: auto; }
"""


def use_model_threads() -> int:
    """Set how many threads PyTorch gives a request (process-wide; `python app.py` calls it once)."""
    import torch

    threads = int(os.environ.get("VQA_MODEL_THREADS", MODEL_THREADS))
    torch.set_num_threads(threads)
    return threads


def launch_kwargs(upload_limiter: UploadLimiter | None = None, **overrides) -> dict:
    """Settings for demo.launch(): loopback by default, GRADIO_SERVER_NAME/PORT honoured (Spaces sets them).
    upload_limiter: how many uploads a client and the server may make per minute (default: demo.upload_limits')."""
    kwargs = dict(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_IMAGE_BYTES,  # the same 10 MB limit vqa.image_io enforces; bigger uploads are refused before reaching us
        enable_monitoring=False,  # no /monitoring endpoint on a public demo
        allowed_paths=[],  # serve no files from disk beyond Gradio's own upload/cache folders
        show_error=False,  # only our gr.Error messages reach users, never raw exception text
        theme=gr.themes.Default(primary_hue="indigo", text_size="lg"),  # local fonts only; large text for projectors
        css=CSS,
        state_session_capacity=STATE_SESSION_CAPACITY,
        app_kwargs={"middleware": [Middleware(UploadLimitMiddleware, limiter=upload_limiter or UploadLimiter())]},
    )
    kwargs.update(overrides)
    return kwargs


def _help(text: str) -> gr.Markdown:
    return gr.Markdown(text, elem_classes="vqa-help")


def _slider(setting: settings.NumberSetting, **kwargs) -> gr.Slider:
    """A slider over a declared setting's range (or the part of it the page shows)."""
    maximum = setting.ui_maximum if setting.ui_maximum is not None else setting.maximum
    return gr.Slider(setting.minimum, maximum, value=setting.default, step=setting.step, label=setting.label, **kwargs)


def _radio(setting: settings.ChoiceSetting, **kwargs) -> gr.Radio:
    return gr.Radio(list(setting.choices), value=setting.default, **{"label": setting.label, **kwargs})


def build_demo(models: ModelManager | None = None, attention_state_ttl_s: float | None = None,
               classroom: ClassroomTraining | None = None) -> gr.Blocks:
    """The whole page, bound to `models` (default: $VQA_MODEL or weights/shapes-vlp, loaded on first use).
    Every model event takes the session's model key (a gr.State) as its last input.
    attention_state_ttl_s: how long the Attention tab's state lives (default: $VQA_ATTENTION_TTL_S or 30 minutes).
    classroom: live training (default: on only with $VQA_CLASSROOM=1)."""
    if attention_state_ttl_s is None:
        attention_state_ttl_s = float(os.environ.get("VQA_ATTENTION_TTL_S", ATTENTION_STATE_TTL_S))
    models = models or ModelManager()
    h = Handlers(models)
    learn = LearnHandlers(models)
    finder = SearchHandlers(models)
    classroom = classroom or ClassroomTraining(models)
    # preprocess=False: handlers get the upload as Gradio's file dict ({"path": ...}) without Gradio opening it.
    # Plain gr.Image preprocessing decodes the file with PIL before our code runs, so a non-image upload would
    # fail inside Gradio with a message nobody understands; vqa.image_io checks size, format and decompression
    # bombs first and says what was wrong. (Gradio still checks that the path is a real upload of this server.)
    # It also skips Gradio's checks of sliders and radios: the `vqa` API checks every value itself
    # (vqa.settings), so a script calling the API directly gets the same message as the page.
    model_event = dict(concurrency_id="model", concurrency_limit=INFERENCE_CONCURRENCY, preprocess=False)
    ui_only = dict(api_visibility="private", queue=False, show_progress="hidden")

    with gr.Blocks(title="Ask a picture", analytics_enabled=False, fill_width=True, delete_cache=DELETE_CACHE) as demo:
        model_key = gr.State(None)  # this session's model (None: the default); a key of models.offers()
        header = gr.Markdown(h.header(), label="Page header")
        with gr.Row(equal_height=False):
            # ----- inputs shared by every tab ---------------------------------------------
            with gr.Column(scale=2, min_width=320):
                image = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"], height=300, elem_id="image")
                question = gr.Textbox(
                    label="Question", placeholder="what color is the circle?", max_length=MAX_QUESTION_CHARS, lines=1, elem_id="question"
                )
                examples = load_examples()
                if examples:
                    gr.Examples(
                        examples=[[e["image"], e["question"]] for e in examples], inputs=[image, question],
                        label="Examples: click one (test scenes the model never saw)", examples_per_page=4, cache_examples=False, elem_id="examples",
                    )

            # ----- tabs ---------------------------------------------------------------------------
            with gr.Column(scale=3, min_width=420):
                with gr.Tabs():
                    with gr.Tab("Ask", id="ask"):
                        _help("Two heads answer the same question: the **classifier** picks from a fixed list, the **generator** writes the answer word by word.")
                        ask_button = gr.Button("Ask", variant="primary", elem_id="ask-button")
                        badge = gr.HTML(label="Agreement", elem_id="agreement")
                        with gr.Row():
                            with gr.Column(min_width=220):
                                classifier_label = gr.Label(label="Classifier head: top answers", num_top_classes=10, elem_id="classifier-answer")
                                classifier_note = gr.Markdown(label="Classifier details")
                            with gr.Column(min_width=220):
                                generative_label = gr.Label(label="Generative head: written answer", num_top_classes=10, elem_id="generative-answer")
                                generative_note = gr.Markdown(label="Generative details")
                        with gr.Accordion("Settings: top-k and decoding", open=False):
                            with gr.Row():
                                top_k = _slider(settings.TOP_K)
                                max_new_tokens = _slider(settings.ANSWER_TOKENS)
                            decoding = _radio(settings.DECODING, label="Decoding (generative head)")
                            with gr.Row():
                                num_beams = _slider(settings.NUM_BEAMS, visible=False)
                                top_p = _slider(settings.TOP_P, visible=False)
                                temperature = _slider(settings.TEMPERATURE, visible=False)

                    with gr.Tab("Caption", id="caption"):
                        _help("The decoder describes the whole picture. **Beam** search keeps the likeliest sentences; **nucleus** sampling draws varied ones.")
                        with gr.Row():
                            caption_decoding = _radio(settings.CAPTION_DECODING)
                            num_captions = _slider(settings.NUM_CAPTIONS)
                        with gr.Accordion("More settings", open=False):
                            with gr.Row():
                                caption_beams = _slider(settings.NUM_BEAMS)
                                caption_top_p = _slider(settings.TOP_P)
                                caption_temperature = _slider(settings.TEMPERATURE)
                                caption_tokens = _slider(settings.CAPTION_TOKENS)
                        caption_button = gr.Button("Caption", variant="primary", elem_id="caption-button")
                        best_caption = gr.Textbox(label="Best caption", interactive=False)
                        caption_table = gr.Markdown(label="All captions")
                        caption_note = gr.Markdown(label="Caption details")

                    with gr.Tab("Attention", id="attention"):
                        _help("Where did the answer come from? Bright areas got the most attention. By default: from [CLS], the summary the classifier answers from; pick a word to see what it looked at.")
                        explain_button = gr.Button("Show attention", variant="primary", elem_id="explain-button")
                        with gr.Row():
                            method = gr.Radio([("raw attention", "attention"), ("rollout (all layers)", "rollout")], value="attention", label="Method")
                            layer = gr.Dropdown([("first fusion layer", "first"), ("last fusion layer", "last"), ("mean over layers", "mean")], value="mean", label="Layer", allow_custom_value=True)
                            head = gr.Dropdown([("mean over heads", "mean")], value="mean", label="Head", allow_custom_value=True)
                            token = gr.Dropdown([("all question words", "all"), (SUMMARY_TOKEN_LABEL, SUMMARY_TOKEN)], value=SUMMARY_TOKEN, label="Word", allow_custom_value=True)
                        with gr.Row(equal_height=False):
                            heatmap = gr.Image(label="Heatmap", format="png", interactive=False, height=340, buttons=["fullscreen", "download"], elem_id="heatmap", elem_classes="vqa-heat")
                            with gr.Column():
                                attention_text = gr.Markdown(label="What the heatmap shows", elem_id="attention-text")
                                colour_scale = gr.Image(
                                    colorbar_image(), label="Colour scale", format="png", interactive=False, show_label=False, container=False, buttons=[]
                                )
                                gr.HTML(COLOUR_SCALE_WORDS)
                                attention_note = gr.Markdown(label="About these maps", elem_classes="vqa-help")
                        gr.Markdown("**Every fusion layer × every head** (rows: layers; last column: mean over heads)")
                        grid = gr.Image(label="All layers × heads", show_label=False, format="png", interactive=False, elem_id="attention-grid", buttons=["fullscreen", "download"])
                        attention_state = gr.State(None, time_to_live=attention_state_ttl_s)

                    with gr.Tab("Quantization", id="quantization"):
                        _help("Store the weights in fewer bits: less memory, often faster on CPU. Does the answer change? Full precision and quantized, side by side.")
                        with gr.Row():
                            scheme = gr.Dropdown(quantization_choices(), value="int8", label="Quantization", scale=2)
                            compare_button = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-button")
                        with gr.Accordion("What works on this machine", open=False):
                            gr.Markdown(quantization_table())
                        compare_summary = gr.Markdown(label="Comparison")
                        with gr.Row():
                            full_label = gr.Label(label="Full precision (fp32)", num_top_classes=5)
                            quant_label = gr.Label(label="Quantized", num_top_classes=5)
                        with gr.Row():
                            full_heat = gr.Image(label="Heatmap fp32", format="png", interactive=False, height=220)
                            quant_heat = gr.Image(label="Heatmap quantized", format="png", interactive=False, height=220)
                            diff_heat = gr.Image(label="|Difference|", format="png", interactive=False, height=220)

                    with gr.Tab("Search", id="search"):
                        _help(
                            "Find pictures by a sentence, or by the current picture. **ITC** compares one vector of the query with one "
                            "vector per picture, all at once; **ITM** then reads your words together with each candidate and re-orders them."
                        )
                        with gr.Row():
                            search_text = gr.Textbox(label="Search for", placeholder="a large red circle and a small blue square", scale=3, elem_id="search-text")
                            search_kind = gr.Radio([TEXT_QUERY, IMAGE_QUERY], value=TEXT_QUERY, label="Search by", scale=2)
                        with gr.Row():
                            search_rerank = gr.Checkbox(value=True, label="Re-rank with ITM")
                            search_top_k = gr.Slider(1, 16, value=8, step=1, label="Pictures to show")
                        search_button = gr.Button("Search", variant="primary", elem_id="search-button")
                        search_note = gr.Markdown(label="What the order means")
                        search_hits = gr.Gallery(label="Best first (click one: where did the words match?)", columns=4, height="auto", object_fit="contain", allow_preview=False, elem_id="search-hits")
                        search_table = gr.Dataframe(headers=HIT_HEADERS, label="Scores", interactive=False, elem_id="search-table")
                        with gr.Row(equal_height=False):
                            search_heat = gr.Image(label="Where the words matched", format="png", interactive=False, height=260, elem_id="search-heat", elem_classes="vqa-heat")
                            search_heat_text = gr.Markdown(label="About the map")
                        with gr.Accordion(f"Your own gallery (up to {SESSION_GALLERY_MAX} pictures; only you see them)", open=False):
                            with gr.Row():
                                add_picture_button = gr.Button("Add the current picture")
                                clear_pictures_button = gr.Button("Clear my gallery")
                            session_gallery_note = gr.Markdown("Your gallery is empty.")
                        session_pictures = gr.State([], time_to_live=attention_state_ttl_s)
                        search_state = gr.State(None, time_to_live=attention_state_ttl_s)

                    with gr.Tab("Model", id="model"):
                        _help("Which model answers your questions. Your choice is yours alone: other visitors keep theirs.")
                        with gr.Row():
                            model_choice = gr.Dropdown(model_choices(models), value=models.default_key, label="Model", scale=3)
                            # Only where the operator allows it (VQA_ALLOW_CUSTOM_MODELS=1): on a public server,
                            # loading whatever a visitor names would let anyone make the server read or download it.
                            model_custom = gr.Textbox(label="Or another hub id / folder", placeholder="owner/name or /path/to/model", scale=2, visible=models.allow_custom)
                        load_button = gr.Button("Load", variant="primary", elem_id="load-button")
                        load_status = gr.Markdown(label="Load status")
                        model_facts = gr.Markdown(h.model_facts() if models.loaded else "", label="Model facts")

                    with gr.Tab("Learn", id="learn"):
                        _help(
                            "The same picture and question answered by different architectures of the field, all trained on the same "
                            "data for the same few minutes. Where does each one let words meet the picture, and does it matter?"
                        )
                        learn_members = gr.CheckboxGroup(
                            learn.member_choices(), value=learn.default_members(), label=f"Architectures to compare (up to {MAX_MEMBERS})", elem_id="learn-members"
                        )
                        compare_models_button = gr.Button("Compare architectures", variant="primary", elem_id="compare-models-button")
                        comparison_table = gr.Dataframe(headers=TABLE_HEADERS, label="Side by side", interactive=False, wrap=True, elem_id="comparison-table")
                        member_slots = []
                        with gr.Row(equal_height=False):
                            for index in range(MAX_MEMBERS):
                                with gr.Column(min_width=180):
                                    member_slots += [
                                        gr.Markdown(visible=False, elem_classes="vqa-member-card"),
                                        gr.Image(label="Where it looked", visible=False, interactive=False, format="png", height=200, elem_classes="vqa-member-heat", buttons=["fullscreen"]),
                                        gr.Image(label="How it is built", visible=False, interactive=False, format="png", elem_classes="vqa-member-diagram", buttons=["fullscreen"]),
                                    ]
                        with gr.Accordion("What the zoo's plots show", open=False):
                            for title, picture, caption in learn.plots():
                                gr.Markdown(f"**{title}**  \n{caption}")
                                gr.Image(picture, show_label=False, interactive=False, format="png", buttons=["fullscreen"])
                        with gr.Accordion("Watch a model learn (classroom mode)", open=classroom.enabled):
                            if not classroom.enabled:
                                gr.Markdown(f"*{CLASSROOM_OFF}*", elem_id="classroom-off")
                            with gr.Row():
                                train_recipe = gr.Dropdown(classroom.recipe_choices(), value=QUICK_RECIPE, label="Recipe", interactive=classroom.enabled)
                                train_minutes = _slider(settings.TRAIN_MINUTES, interactive=classroom.enabled)
                            with gr.Row():
                                train_button = gr.Button("Train", variant="primary", interactive=classroom.enabled, elem_id="train-button")
                                stop_button = gr.Button("Stop", variant="stop", interactive=classroom.enabled, elem_id="stop-button")
                            _help(
                                "The quick recipe starts from a vision tower that has already learned to see, as real models start from a "
                                "pretrained image model, so every objective trains from the first step. Learning to see from scratch, the "
                                "loss first falls while only the vision tower trains, jumps when every objective joins in, then falls again. "
                                "Validation accuracy is measured on pictures and questions it never trained on."
                            )
                            train_status = gr.Markdown(label="Training status", elem_id="train-status")
                            with gr.Row():
                                # one line: a series that first appears in a later update is not drawn by the plot
                                loss_plot = gr.LinePlot(
                                    x="minutes", y="loss", title="Training loss (smoothed)",
                                    x_title="minutes", y_title="loss", elem_id="loss-plot",
                                )
                                accuracy_plot = gr.LinePlot(
                                    x="minutes", y="accuracy", color="head", color_map={"classifier": "#4f46e5", "generative": "#059669"},
                                    title="Validation accuracy",
                                    x_title="minutes", y_title="accuracy", y_lim=[0, 1], elem_id="accuracy-plot",
                                )

        # ----- events ----------------------------------------------------------------------------
        ask_inputs = [image, question, top_k, decoding, num_beams, top_p, temperature, max_new_tokens, model_key]
        ask_outputs = [classifier_label, generative_label, badge, classifier_note, generative_note]
        ask_button.click(h.ask, ask_inputs, ask_outputs, api_name="ask", **model_event)
        question.submit(h.ask, ask_inputs, ask_outputs, api_name="ask_on_enter", api_visibility="private", **model_event)

        def decoding_controls(choice):
            return gr.update(visible=choice == "beam"), gr.update(visible=choice == "nucleus"), gr.update(visible=choice == "nucleus")

        decoding.change(decoding_controls, decoding, [num_beams, top_p, temperature], api_name="decoding_controls", **ui_only)

        caption_button.click(
            h.caption, [image, caption_decoding, num_captions, caption_beams, caption_top_p, caption_temperature, caption_tokens, model_key],
            [best_caption, caption_table, caption_note], api_name="caption", **model_event,
        )

        explain_button.click(
            h.explain, [image, question, layer, head, token, method, model_key],
            [heatmap, grid, colour_scale, attention_text, attention_note, attention_state, layer, head, token],
            api_name="explain", **model_event,
        )
        for control in (method, layer, head, token):
            # .input, not .change: explain() updating the choices must not trigger a second drawing
            control.input(
                h.redraw_attention, [attention_state, layer, head, token, method], [heatmap, grid, attention_text],
                api_name=f"redraw_{control.label.lower()}", api_visibility="private", concurrency_id="draw", concurrency_limit=1,
                preprocess=False,  # the handler checks every value against the menus itself
            )

        compare_button.click(
            h.compare_quantized, [image, question, scheme, model_key],
            [compare_summary, full_label, quant_label, full_heat, quant_heat, diff_heat],
            api_name="compare_quantized", **model_event,
        )
        load_button.click(
            h.load_model, [model_choice, model_custom, model_key], [load_status, model_facts, header, model_key],
            api_name="load_model", concurrency_id="load", concurrency_limit=LOAD_CONCURRENCY, preprocess=False,
        )
        demo.load(h.refresh, model_key, [model_facts, header], api_name="refresh", api_visibility="private", concurrency_id="draw")

        search_inputs = [search_text, image, search_kind, search_rerank, search_top_k, session_pictures, model_key]
        search_outputs = [search_hits, search_table, search_note, search_state]
        search_button.click(finder.search, search_inputs, search_outputs, api_name="search", **model_event)
        search_text.submit(finder.search, search_inputs, search_outputs, api_name="search_on_enter", api_visibility="private", **model_event)
        search_hits.select(finder.where_words_matched, [search_state, model_key], [search_heat, search_heat_text],
                           api_name="search_hit_map", api_visibility="private", **model_event)
        add_picture_button.click(finder.add_picture, [image, session_pictures], [session_pictures, session_gallery_note],
                                 api_name="add_picture", api_visibility="private", concurrency_id="draw", preprocess=False)
        clear_pictures_button.click(finder.clear_pictures, None, [session_pictures, session_gallery_note], api_name="clear_pictures", **ui_only)

        compare_models_button.click(
            learn.compare_models, [image, question, learn_members], [comparison_table, *member_slots], api_name="compare_models", **model_event,
        )
        # Two at a time, so that a second request reaches the handler and hears that a run is going on.
        train_button.click(
            classroom.train_live, [train_recipe, train_minutes, model_key], [train_status, loss_plot, accuracy_plot, model_choice, model_key, header],
            api_name="train_live", concurrency_id="train", concurrency_limit=2, preprocess=False,
        )
        stop_button.click(classroom.stop_live, None, train_status, api_name="stop_live", queue=False)

    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    demo.models = models  # for tests and app.py
    return demo
