"""Development and test tools (AtHoc simulator); never deployed."""
