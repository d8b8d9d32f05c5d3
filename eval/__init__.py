"""headcam.eval: frozen-trunk features -> linear / kNN readouts -> reports (SPEC §7-9).

Modules, in data-flow order: ``models`` (what ``--model`` names), ``features`` (extraction through
the pipelines' eval loader, on-disk cache), ``baselines`` (HOG, raw pixels), ``protocols`` (which
samples train and score a readout), ``probes`` (adam, logreg, svm, knn), ``decode`` (one model
under one protocol), ``analyses`` (class selectivity, top images, attention maps), ``report``
(JSON, Markdown, plots, compare) and ``cli`` (``headcam-eval``).
"""
