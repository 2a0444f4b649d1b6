"""The notebook face of a run: the ipywidgets form and its live dashboard, over start()."""
