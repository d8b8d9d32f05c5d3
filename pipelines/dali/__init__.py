"""headcam.pipelines.dali"""
