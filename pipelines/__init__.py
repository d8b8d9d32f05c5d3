"""headcam.pipelines"""
