"""svcca: CCA, SVCCA, PWCCA and CKA similarity of neural representations (filled in by its issue)."""
