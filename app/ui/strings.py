"""Every sentence the studio's pages show, in one place (layout and callbacks refer to these names).

Kept apart from the page modules so wording can be reviewed, changed or translated without touching
layout or logic. Placeholders use str.format names.
"""

from __future__ import annotations

APP_TITLE = "PEFT Studio"
APP_TAGLINE = "Fine-tune open models with adapters — no code, nothing leaves your machine."

# --- navigation ----------------------------------------------------------------------------------
NAV_RUNS = "Runs"
NAV_NEW = "New run"
NAV_RUN = "Run"

# --- statuses ------------------------------------------------------------------------------------
STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
STATUS_FILTER_ALL = "All"
STATUS_HEADLINES = {
    "queued": "Waiting to start",
    "running": "Training",
    "succeeded": "Finished",
    "failed": "This run failed",
    "cancelled": "Cancelled",
}

# --- new run -------------------------------------------------------------------------------------
NEW_TITLE = "Start a new run"
NEW_SUBTITLE = "Choose a base model, your data and a method. The summary on the right updates as you go."
NEW_CLONED_FROM = "Settings copied from run #{id} — change anything, then start."
SECTION_MODEL = "1 · Base model"
SECTION_DATA = "2 · Training data"
SECTION_METHOD = "3 · Method"
SECTION_TRAINING = "4 · Training"
SECTION_SUMMARY = "Summary"
RUN_NAME_LABEL = "Run name"
RUN_NAME_PLACEHOLDER = "Optional — e.g. “support bot, r=16”"
MODEL_LABEL = "Base model"
MODEL_INFO = "Pick a suggested model, or type any Hugging Face model id (org/name) or a folder on the server."
DATA_SOURCE_LABEL = "Data source"
DATA_DEMO = "Built-in demo dataset (offline, 640 chat examples)"
DATA_UPLOAD = "Upload a JSONL file"
DATA_UPLOAD_LABEL = "JSONL file"
DATA_UPLOAD_HINT = (
    "One JSON object per line: {\"messages\": [{\"role\": \"user\", ...}, {\"role\": \"assistant\", ...}]}, "
    "{\"prompt\": ..., \"completion\": ...} or {\"text\": ...}."
)
DATA_UPLOADED = "✓ **{name}** — {rows:,} rows ({columns})"
DATA_FROM_CLONE = "✓ Using the file of the copied run: `{path}`"
DATA_UPLOAD_FAILED = "This file cannot be used yet:"
DATA_NEED_FILE = "Upload a JSONL file, or switch back to the demo dataset."
METHOD_LABEL = "Method"
ADVANCED_METHOD = "Advanced {method} settings"
ADVANCED_TRAINING = "Advanced training settings"
MODULES_DEFAULT_HINT = "Leave empty for the model's usual targets; “all-linear” adapts every linear layer."
JSON_FIELD_HINT = "JSON, e.g. {example}. Leave empty for the default."
START = "Start training"
STARTING = "Starting…"
ESTIMATE_ROUGH = "Rough estimate, before the run"
ESTIMATE_TRAINABLE = "Trainable parameters"
ESTIMATE_OF_TOTAL = "{pct} of {total}"
ESTIMATE_STEPS = "Optimizer steps"
ESTIMATE_STEPS_DETAIL = "{per_epoch} per epoch × {epochs} epochs · {rows:,} training rows"
ESTIMATE_STEPS_MAX = "fixed by max steps · {rows} training rows"
ESTIMATE_MEMORY = "GPU memory"
ESTIMATE_MEMORY_PARTS = "weights {weights} · adapter + optimizer {adapter} · activations {acts}"
ESTIMATE_UNKNOWN = "—"
ESTIMATE_LAYERS = "{layers} adapted layers"
PROBLEMS_TITLE = "Fix these before starting:"
INVALID_NUMBER = "enter a number"
INVALID_WHOLE = "enter a whole number"
INVALID_JSON = "not valid JSON ({error})"

# --- runs ----------------------------------------------------------------------------------------
RUNS_TITLE = "Runs"
RUNS_SUBTITLE = "Every run the studio knows about. They keep going if you close this tab."
RUNS_EMPTY = "No runs yet."
RUNS_EMPTY_FILTERED = "No {status} runs."
RUNS_EMPTY_CTA = "Start your first run"
RUNS_FILTER = "Show"
RUNS_COLUMNS = ("Run", "Status", "Progress", "Loss", "Created", "Duration", "")
ACTION_OPEN = "Open"
ACTION_CLONE = "Clone"
ACTION_CANCEL = "Cancel"
ACTION_DELETE = "Delete"
CONFIRM_DELETE = "Delete run #{id} “{name}”? Its metrics and files (adapter, checkpoints) are removed for good."
CONFIRM_DELETE_YES = "Delete run"
CONFIRM_DELETE_NO = "Keep it"
DELETED = "Run #{id} deleted."
CANCEL_REQUESTED = "Run #{id}: {message}"
TILE_RUNNING = "Running"
TILE_QUEUED = "Queued"
TILE_SUCCEEDED = "Succeeded"
TILE_FAILED = "Failed"
NEW_RUN_BUTTON = "+ New run"

# --- run detail ----------------------------------------------------------------------------------
RUN_PICK = "Open a run"
RUN_PICK_INFO = "Or click a run on the Runs page."
RUN_NOT_FOUND = "There is no run #{id}. It may have been deleted."
RUN_NONE = "No run selected."
WHAT_TO_TRY = "What to try next"
PROGRESS_STEPS = "Step {step:,} of {total:,}"
PROGRESS_STEP = "Step {step:,}"
PROGRESS_WAITING = "Waiting for the first step"
PROGRESS_ETA = "about {eta} left"
PROGRESS_ELAPSED = "{elapsed} elapsed"
PROGRESS_TOOK = "took {elapsed}"
PROGRESS_ATTEMPT = "attempt {attempt} of {max}"
TILE_LOSS = "Train loss"
TILE_EVAL_LOSS = "Eval loss"
TILE_LR = "Learning rate"
TILE_SPEED = "Tokens / s"
TILE_PADDING = "Padding"
TILE_PADDING_HELP = "Share of the last step's token slots that were padding; training.packing lowers it."
TILE_PADDING_NOTE = "training.packing lowers it"
CHART_LOSS = "Loss"
CHART_LR = "Learning rate"
CHART_WAITING = "The chart fills in as training reports its first steps."
SERIES_TRAIN = "train"
SERIES_EVAL = "eval"
TAB_CONFIG = "Configuration"
TAB_LOG = "Log"
TAB_ARTIFACTS = "Artifacts"
CONFIG_MODEL_DATA = "Model and data"
CONFIG_METHOD = "Method"
CONFIG_TRAINING = "Training"
CONFIG_DATASET_DEMO = "built-in demo dataset"
CONFIG_SHOW_JSON = "Show as JSON (for the API or `peft-studio submit`)"
LOG_EMPTY = "No log lines yet."
LOG_LABEL = "Last lines of the training log"
ARTIFACTS_EMPTY = "Nothing yet: the adapter appears here when the run succeeds."
ARTIFACT_KINDS = {
    "adapter": "Adapter (PEFT format)",
    "checkpoint": "Checkpoint",
    "merged": "Merged model",
    "bundle": "Bundle",
    "hub_push": "Published on the Hub",
}
DOWNLOAD_ADAPTER = "⬇ Download adapter (zip)"
DOWNLOAD = "Download"
CANCEL_RUN = "Cancel run"
CLONE_RUN = "Clone into a new run"
# A combination (app.services.combining) on the run page and in the Runs list.
COMBINATION_KIND = "Combination"
CLONE_COMBINATION = "Combine again (prefilled)"
COMBINED_FROM = "Combined from"
COMBINED_FROM_COLUMNS = ("Run", "Name", "Weight")
COMBINED_HOW = "How"
COMBINED_KNOBS = {"combination_type": "type", "density": "density", "majority_sign_method": "sign election", "svd_rank": "rank of the result",
                  "seed": "seed"}
CONFIG_COMBINATION = "Combination"
COMBINED_RANK_AUTO = "the largest source rank"
CANCELLED_BY_YOU = "Cancel requested — the run stops after its current step."
CANCEL_NOT_POSSIBLE = "This run has already finished."
MERGE_BUTTON = "Merge into the base model"
MERGE_REQUESTED = "Merge requested — a worker merges the adapter into the base model, shard by shard."
MERGE_TITLE = "Merged model"
MERGE_HEADLINES = {
    "queued": "Merge waiting for a worker",
    "running": "Merging into the base model",
    "succeeded": "Merged model ready",
    "failed": "The merge failed",
}
MERGE_PROGRESS = "{done} of {total} shards written"
MERGE_WORKER_GONE = "Its worker stopped responding during the merge; merge again."
MERGE_ZIP = "⬇ Download the merged model (zip)"
MERGE_FILES_COLUMNS = ("File", "Size", "SHA-256", "")
MERGE_FILES_NOTE = "Load it with transformers alone: AutoModelForCausalLM.from_pretrained(folder). Check each file against its SHA-256."

# --- Datasets page (app/ui/datasets.py) and the New run dataset picker ------------------------------
NAV_DATASETS = "Datasets"
DS_TITLE = "Datasets"
DS_SUBTITLE = "Bring training data in once — a file, a path on this server or a Hugging Face dataset — check it, map its columns, reuse it."
DS_ADD = "Add a dataset"
DS_TAB_UPLOAD = "Upload a file"
DS_TAB_PATH = "Path on this server"
DS_TAB_HUB = "Hugging Face Hub"
DS_UPLOAD_LABEL = "CSV, JSON, JSONL or Parquet file"
DS_UPLOAD_HINT = (
    "Recognised: chat `messages`, ShareGPT `conversations`, alpaca `instruction`/`input`/`output`, `prompt`/`completion`, "
    "plain `text`, and `text`/`label` for classification (trained as text generation: the model writes the label after "
    "“text + ↵Label: ”). Other column names can be mapped by hand. Archives are refused; one field may hold at most 1 MB."
)
DS_PATH_LABEL = "File or dataset folder on the server"
DS_PATH_PLACEHOLDER = "/data/my-dataset.parquet"
DS_HUB_REPO = "Dataset id"
DS_HUB_REPO_PLACEHOLDER = "org/name"
DS_HUB_CONFIG = "Config (optional)"
DS_HUB_SPLIT = "Split"
DS_HUB_NOTE = "Loaded with the `datasets` library. Datasets that need a loading script (trust_remote_code) are refused."
DS_ADD_BUTTON = "Add"
DS_ADDED = "Added {name}: {rows:,} rows."
DS_ADDED_UNSURE = "Added {name}: {rows:,} rows. The format was not recognised for sure — check the format and the column mapping below."
DS_ALREADY = "This file is already stored as {name} (same SHA-256): showing it."
DS_REFUSED = "This dataset cannot be used:"
DS_LIST = "Your datasets"
DS_EMPTY = "No datasets yet. Upload a file above — or train on the built-in demo dataset from New run."
DS_COLUMNS = ("Name", "Rows", "Format", "Size", "Added", "SHA-256")
DS_PICK = "Dataset"
DS_DETAIL = "Format and columns"
DS_FORMAT = "Format"
DS_FORMAT_INFO = "What each row is. Pick the fields' columns below; the check reads every row again."
DS_FIELD = "Column for “{field}”"
DS_FIELD_OPTIONAL = "Column for “{field}” (optional)"
DS_SAVE_MAPPING = "Save format and mapping"
DS_MAPPING_SAVED = "Saved: {rows:,} rows read as {format}."
DS_NEEDS_MAPPING = "Not recognised for sure — pick the format and map the columns, then save."
DS_GUESSED = "Read as {format}"
DS_PREVIEW = "Rows"
DS_PAGE = "Page {page} of {pages} · {total:,} rows"
DS_PREV = "← Previous"
DS_NEXT = "Next →"
DS_DELETE = "Delete dataset"
DS_DELETE_CONFIRM = "Yes, delete it"
DS_DELETE_ASK = "Delete {name} and its stored file? Runs that already finished keep their results."
DS_DELETED = "Deleted {name}."
DS_NO_FORMAT = "needs mapping"
DATA_STORED = "A dataset from the Datasets page"
DATA_PICK_LABEL = "Dataset"
DATA_PICK_INFO = "Stored datasets; add or remap them on the Datasets page."
DATA_STORED_NOTE = "✓ **{name}** — {rows:,} rows, {format}{mapping}"
DATA_NEEDS_MAPPING = "⚠ **{name}**: its format is not known yet — map its columns on the [Datasets](datasets) page."
INSPECT_TITLE = "Inspect what the model will see"
INSPECT_ROW = "Row"
INSPECT_BUTTON = "Show this row"
INSPECT_LENGTHS = "Token lengths"
DATA_UPLOAD_ANY = "Upload a new file"
DATA_UPLOAD_ANY_LABEL = "CSV, JSON, JSONL or Parquet file (stored as a dataset)"
DATA_NEED_DATASET = "Pick a stored dataset (or upload a file), or switch back to the demo dataset."
DATA_TEMPLATE_LABEL = "Chat template"
DATA_TEMPLATE_INFO = "How conversations become text: the model's own template (auto) or a built-in one."
DATA_CLONE_MISSING = "The copied run's dataset is not available any more ({problem}); pick another."
INSPECT_INTRO = "One row exactly as the trainer will tokenize it — green tokens are learned, grey ones only read — and how long the rows are."
INSPECT_FAILED = "The sample cannot be shown:"
DS_TRAIN_ON_IT = "Train on it →"
