"""VLMemes offline pipeline: labelled meme folders -> one DuckDB prediction cache.

Modules, one concern each (docs/architecture.md draws how they connect):
  cli       `vlmemes ...` / `python -m pipeline ...`: precompute, status, annotations, export, dashboard
  options   Options: every option of a precompute and its default, one frozen dataclass
  config    label folders, paths
  errors    VlmemesError (what a user can fix; the CLI prints it) and first_line()
  images    safe image decoding, thumbnails, overlays
  dataset   scanning the meme folder (ids, labels, conflicts, bad files)
  stages/   the stages, one module each, and their registry (order, construction from Options):
              base (Stage, Variant, MemeInput: the interface and the cache key), clip + clip_prompts,
              vlm + vlm_prompts + vlm_answer (the answer parser), cam, ocr + ocr_binarize + ocr_quality
  runner    runs stages over memes: cache lookups, batches, progress, failures, summary
  store     the only code that writes the DuckDB file (schema in docs/schema.md)
  queries   the only code that reads it: the dashboard's, the report's, status' and summary's SQL
  metrics   evaluation statistics with intervals, from counts or rows (docs/metrics.md)
  summary   each prediction set's metrics, stored at the end of every run
  status    `vlmemes status`: what the cache holds
  export    the one-file HTML report and Parquet export
  hf        Hugging Face ids or local folders (offline-aware), device and precision choice
"""
