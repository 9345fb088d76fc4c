"""Deployment: policy bundles (save, validate, load), shared by sim evaluation, the ROS policy node
and the learner."""
