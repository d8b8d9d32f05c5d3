"""headcam.eval"""
