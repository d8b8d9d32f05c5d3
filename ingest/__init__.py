"""headcam.ingest"""
