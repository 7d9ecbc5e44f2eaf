"""What the Streamlit pages compute, as plain functions (no Streamlit here, so it is testable and reusable).

The pages only lay out widgets; every number, table and validation they show comes from these modules:

- :mod:`~cgcnn.app.classroom`: the app's run store, its job runner and worker count, display names;
- :mod:`~cgcnn.app.launch`: checking fine-tune specs and queueing them, zip uploads of training data;
- :mod:`~cgcnn.app.tables`: the tables the pages show (zoo, layers, runs, Table 2, probes, crystals);
- :mod:`~cgcnn.app.uploads`: crystals uploaded to the viewer and the predict page;
- :mod:`~cgcnn.app.viewer`: the crystal viewer's graph, edge weights and 3D scene.
"""
