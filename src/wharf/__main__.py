from wharf.cli import app

app(prog_name="wharf")
