"""Analysis of finished runs: ``litvision analyze <tool>`` (t-SNE, feature maps, confusion matrix, SVM and
cRT heads, training curves, run tables, loss landscape). Training code never imports this package.

Every run tool rebuilds the model and datamodule from a run directory (:func:`litvision.runs.load_run`),
writes PNG figures plus the numbers behind them into ``<run_dir>/analysis/`` and adds the figures to the
run's TensorBoard; ``docs/analysis.md`` lists the files.
"""
