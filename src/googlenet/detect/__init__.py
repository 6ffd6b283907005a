"""Detection as in section 8: region proposals, the Inception region classifier, ILSVRC mAP."""
