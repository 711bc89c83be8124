"""Internals of the Proxmox VE API simulator (see ../pve_sim.py and ../README.md)."""
