"""VLMemes offline pipeline: labelled meme folders -> one DuckDB prediction cache.

Modules, one concern each:
  config    label folders, defaults
  images    safe image decoding, thumbnails, overlays
  dataset   scanning the meme folder (ids, labels, conflicts, bad files)
  store     the only code that writes the DuckDB file (schema in docs/schema.md)
  stage     the small interface every pipeline stage implements, and its cache key
  ocr / clip / vlm / cam   the stages
  hf        Hugging Face ids or local folders (offline-aware), device and precision choice
  clip_prompts / vlm_prompts   versioned prompt sets for CLIP and the VLM
  runner    runs stages over memes: cache lookups, batches, progress, failures, summary
  metrics   evaluation statistics with intervals, from counts or rows (dashboard, export)
  summary   each prediction set's metrics counted in SQL, stored at the end of every run
  status    `python -m pipeline status`: what the cache holds
  export    the one-file HTML report and Parquet export
  cli       `python -m pipeline ...`
"""
