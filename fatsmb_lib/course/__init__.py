"""Course: the notebooks executed through papermill, and the students' copy."""
