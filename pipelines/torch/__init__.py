"""headcam.pipelines.torch"""
