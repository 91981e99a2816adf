"""Day activity: billable calls and credits per account and UTC day, net of refunds."""
