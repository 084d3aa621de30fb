"""Analysis of scaling grids: fits and reports. Never imports torch or ray."""
