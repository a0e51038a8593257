"""The Streamlit app's parts. Only this package and ``app.py`` import streamlit, and not every module here does:
``config``, ``figure``, ``forms`` and ``selection`` are plain functions the tests call directly; ``state``,
``main`` and the panel modules arrange them on the page."""
