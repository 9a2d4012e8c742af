"""The image service: uploads turned into web-ready renditions by taskmill jobs."""
