"""What the Streamlit pages compute, as plain functions (no Streamlit here, so it is testable and reusable).

The pages only lay out widgets; every number, table and validation they show comes from these modules:

- :mod:`~cgcnn.app.classroom`: the app's run store, its job runner and worker count, display names;
- :mod:`~cgcnn.app.class_settings`: what a teacher sets for the class (protocol presets, a pinned one, workers);
- :mod:`~cgcnn.app.teacher`: teacher mode (the password check, the class panel's actions);
- :mod:`~cgcnn.app.launch`: checking fine-tune specs and queueing them, zip uploads of training data;
- :mod:`~cgcnn.app.tables`: the tables the pages show (zoo, layers, the compact run list, Table 2, probes);
- :mod:`~cgcnn.app.uploads`: crystals uploaded to the viewer and the predict page;
- :mod:`~cgcnn.app.viewer`: the crystal viewer's graph, edge weights and 3D scene.
"""
