"""The car catalog (seed 002): cars, CSV imports, images and their thumbnails."""
