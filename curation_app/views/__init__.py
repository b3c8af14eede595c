"""One module per app page (each has `render(path)`), plus the shared episode viewer."""
