"""The efficacy study of DatasetEquity on the tiny synthetic KITTI data:
the study (runs), its report and the oracle likelihoods."""
