"""File formats (torch-free): .lp light files, MLIC folders, RTI model folders."""
