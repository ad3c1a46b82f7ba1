"""Regenerate the paper's Table 1, SVCCA/PWCCA analysis and cumulative ablations (not yet implemented)."""
import argparse
import sys

if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__).parse_args()
    sys.exit("evaluate.py: not yet implemented")
