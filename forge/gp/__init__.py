"""forge.gp"""
