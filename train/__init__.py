"""headcam.train"""
