"""The VLMemes dashboard: a read-only Streamlit view of the prediction cache.

    streamlit run dashboard/app.py -- --db data/vlmemes.duckdb

Modules, one concern each:
  app         entry point: page config, sidebar, navigation, one read-only connection per script run
  db          where the cache is, the per-run connection, cached query calls, "busy"/"missing" states
  queries     ALL SQL, as named functions (connection + parameters)
  analysis    metrics / agreement / ROC over rows fetched by SQL (pipeline.metrics), cached
  imaging     blur, blend, OCR boxes, the original image (PIL only)
  charts      Altair charts
  components  shared widgets: URL-bound filters, gallery cards, pagination, banners, notices
  views/*     one file per page (st.Page); they only lay out. Not "pages/": a pages/ folder beside
              app.py switches Streamlit to its legacy multipage mode, which runs those files
              without app.py (no sidebar, no cache reader) on a server's first run and in AppTest
"""
