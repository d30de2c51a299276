"""The VLMemes dashboard: a read-only Streamlit view of the prediction cache.

    streamlit run dashboard/app.py -- --db data/vlmemes.duckdb

Modules, one concern each:
  app         entry point: page config, sidebar, navigation, one read-only connection per script run
  db          where the cache is, the per-run connection, cached query calls, "busy"/"missing" states
  queries     ALL SQL, as named functions (connection + parameters); the metric counts are
              pipeline/summary.py's, shared with the precompute that stores them
  analysis    metrics and ROC per prediction set (stored by the last run, or computed now) and the
              agreement of two sets, from counts made in SQL (pipeline.metrics)
  imaging     blur, blend, OCR boxes, the original image (PIL only)
  charts      Altair charts
  components  shared widgets: URL-bound filters, gallery cards, pagination, banners, notices,
              table headers and model names in the visitor's language
  lang        the interface language (?lang=, sidebar switch, browser default) and `_`, `_n`
  views/*     one file per page (st.Page); they only lay out. Not "pages/": a pages/ folder beside
              app.py switches Streamlit to its legacy multipage mode, which runs those files
              without app.py (no sidebar, no cache reader) on a server's first run and in AppTest
"""
