"""Studies built on the package (as MMDetection3D keeps experiments under
projects/)."""
