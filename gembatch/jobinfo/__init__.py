"""job-info.jsonl: parsing every historical line shape, import (merge) and canonical export."""
