"""SIME curation app (Streamlit): browse and query the store, trim frames, select rollouts, manage versions."""
