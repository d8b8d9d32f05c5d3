"""headcam.train.losses"""
