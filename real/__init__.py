"""ROS 2 nodes (installed as robot_rl.real; arrives with the ROS 2 deployment issue)."""
