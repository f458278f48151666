"""The stage layer: one module per workflow stage, in pipeline order.

ingest -> preprocess -> split -> train -> evaluate -> predict -> saliency -> report.

Only this layer knows the ``results/`` layout (:mod:`medcnn.stages.layout`) and dispatches on
a task's kind; each stage reads the files of earlier stages, calls the library below it and
writes its own. ``medcnn <step>`` (:mod:`medcnn.cli`) parses arguments and calls one stage.
A stage imports earlier stages (to read what they wrote), never a later one.
"""
