"""Course-staff tools: generate the student stencil, the handout figures and the student release."""
